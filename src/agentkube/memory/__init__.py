"""Agent memory: conversation history now; semantic memory and task queues later."""
