"""The agent's graph for LangGraph Studio (`langgraph dev` in the repository root reads
langgraph.json and opens this). Studio shows the loop and its checkpoints; a run needs
the live context (policy, toolbox, device, budget) that `kernelpilot optimize` builds,
so runs are started from the CLI and inspected here.
"""
from agent.graph import build_graph

graph = build_graph()
