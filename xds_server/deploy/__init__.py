"""Deployment artefacts generated from the tenant spec (Helm values for the chart in helm/fairshare)."""

from xds_server.deploy.helm_values import chart_values, is_dedicated

__all__ = ["chart_values", "is_dedicated"]
