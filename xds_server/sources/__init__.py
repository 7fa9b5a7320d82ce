"""Where the control plane's config and policies come from (`config`); endpoint sources live in
xds_server/endpoints."""
