"""The agent: a LangGraph graph that plans a question against the installed tools, runs the steps, re-plans on failure and writes an evidence-linked report."""
