"""The agent: policies, prompts, the LangGraph loop and the `kernelpilot` CLI."""
