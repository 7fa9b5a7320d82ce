# PII detection: precision/recall on the labelled corpus and the cost of redaction (bench/pii.py), and
# the corpus itself (bench/pii_corpus.py rewrites tests/runtime/pii_corpus/corpus.jsonl).
.PHONY: bench-pii pii-corpus

bench-pii: setup
	$(BIN)/python -m bench.pii

pii-corpus: setup
	$(BIN)/python -m bench.pii_corpus
