"""The LangGraph graph: state, run-time context, wiring."""
