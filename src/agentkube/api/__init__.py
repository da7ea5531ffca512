"""The ``ai.openvn/v1`` API: typed models, manifest loading and CRD generation."""

from agentkube.api.errors import ManifestError
from agentkube.api.loading import Resource, load_file, parse_documents, single_agent
from agentkube.api.mcpservers import MCPServer
from agentkube.api.models import API_VERSION, Agent, AgentSpec, Model, ModelSpec

__all__ = [
    "API_VERSION",
    "Agent",
    "AgentSpec",
    "MCPServer",
    "ManifestError",
    "Model",
    "ModelSpec",
    "Resource",
    "load_file",
    "parse_documents",
    "single_agent",
]
