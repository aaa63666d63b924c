"""`python -m agent.cli ...`: the same as `kernelpilot ...`."""
import sys

from agent.cli.main import main

sys.exit(main())
