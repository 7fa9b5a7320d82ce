# The config at fleet scale (issue 12): the tenant config and the policies as one bundle on a versioned S3
# object, which control planes started with `fairshare serve --config-source s3://BUCKET/KEY` poll and apply.
#   make config-publish CONFIG_BUCKET=b [CONFIG_KEY=fairshare/config.tar.gz]
#                        validates the config whole (policies included), bundles it with policy/ and uploads
#                        it as a new version; prints the version id. AWS_ENDPOINT_URL for moto or another store.
.PHONY: config-publish

CONFIG_BUCKET ?=
CONFIG_KEY ?= fairshare/config.tar.gz
CONFIG_BUNDLE := .fairshare/config-bundle.tar.gz

config-publish: setup
	@test -n "$(CONFIG_BUCKET)" || { echo "config-publish: set CONFIG_BUCKET (and CONFIG_KEY, default $(CONFIG_KEY))" >&2; exit 2; }
	$(BIN)/fairshare config publish --bucket $(CONFIG_BUCKET) --key $(CONFIG_KEY) --config $(CONFIG) \
	  --policy $(POLICY) -o $(CONFIG_BUNDLE)
