"""Compiler: validated config (+ endpoints, keys) -> one immutable snapshot of Envoy resources per region."""

from xds_server.compiler.compile import CompiledPlatform, CompileInputs, Compiler
from xds_server.compiler.endpoints import Endpoint, EndpointDirectory

__all__ = ["CompileInputs", "CompiledPlatform", "Compiler", "Endpoint", "EndpointDirectory"]
