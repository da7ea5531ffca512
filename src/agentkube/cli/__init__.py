"""The ``agentkube`` command line: thin wrappers over the runtime, operator and sandbox layers."""
