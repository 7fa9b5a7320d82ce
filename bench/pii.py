"""PII detection: precision and recall on the labelled corpus, and what redaction costs per request.

Run with `make bench-pii` or `python -m bench.pii [--seconds S]`. Writes bench/results/pii.{json,md} and
pii.png.

Quality: every corpus text (bench/pii_corpus.py: generated with a fixed seed plus hand-written cases and
near-misses) through `find`; a finding counts when a labelled span of the same type overlaps it.

Cost: `redact` with acme's rules over three kinds of text: prose without digits or '@' (most traffic),
the corpus texts (about one entity per 25 characters: a worst case) and a customer-support mix. The
baseline, measured in the same run on the same texts, is the work a request to the light classifier
already does without PII rules: decoding the OIP JSON body, validating it, and the lexicon's predict.
The ratio says how much slower that request's own work gets with redaction in front of it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.pii_corpus import TYPES, Case, heldout, load, score
from bench.report import environment, markdown_table, results_dir, write_results
from inference_images.runtime.models.lexicon import LexiconSentimentModel
from inference_images.runtime.pii import Entity, PiiRules, find, redact
from inference_images.runtime.protocol import decode_json, parse_infer_request

NAME = "pii"
RULES = PiiRules(
    redact=frozenset({Entity.EMAIL, Entity.PHONE, Entity.IP_ADDRESS}), block=frozenset({Entity.CREDIT_CARD})
)
PROSE = (
    "I love the new dashboard, but the export is slow and the support team never answered my question about "
    "the invoice. Please fix the search too, it keeps failing when I filter by date. "
)
SUPPORT = (
    "Hi team, order 88412 arrived broken on 03.04.2024. Please refund to the card on file and email me at "
    "lena.rossi@example.com, or call +44 20 7946 0958 after 5pm. Ticket 55120, app version 4.2.1. Thanks! "
)


def timed(work: Callable[[], Any], seconds: float) -> float:
    """Seconds per call, over at least ``seconds`` of repeated calls."""
    calls, start = 0, time.perf_counter()
    while True:
        work()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def cost(texts: Sequence[str], seconds: float) -> dict[str, float]:
    """Redaction against the baseline request work, on the same texts."""
    body = json.dumps(
        {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}]}
    ).encode()
    model = LexiconSentimentModel("classifier", "v1", negation=False)
    kib = sum(len(t.encode()) for t in texts) / 1024

    def baseline() -> None:
        request = parse_infer_request(decode_json(body))
        model.predict(request.input_map())

    def redaction() -> None:
        for text in texts:
            redact(text, RULES)

    base_s = timed(baseline, seconds)
    pii_s = timed(redaction, seconds)
    return {
        "kib": round(kib, 2),
        "texts": len(texts),
        "redact_us_per_kib": pii_s / kib * 1e6,
        "baseline_us_per_kib": base_s / kib * 1e6,
        "redact_us_per_text": pii_s / len(texts) * 1e6,
        "ratio_to_baseline": pii_s / base_s,
    }


def quality(cases: list[Case]) -> dict[str, dict[str, Any]]:
    scores = score(cases, lambda t: [(f.start, f.end, f.entity.value) for f in find(t)])
    return {
        kind: {
            "precision": s.precision,
            "recall": s.recall,
            "tp": s.tp,
            "fp": s.fp,
            "fn": s.fn,
            "misses": s.misses[:5],
            "false_alarms": s.false_alarms[:5],
        }
        for kind, s in scores.items()
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on CI or benchmark hosts
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    kinds = [*TYPES, "overall"]
    xs = range(len(kinds))
    q = results["quality"]
    left.bar([x - 0.2 for x in xs], [q[k]["precision"] for k in kinds], width=0.4, label="precision")
    left.bar([x + 0.2 for x in xs], [q[k]["recall"] for k in kinds], width=0.4, label="recall")
    left.set_xticks(list(xs), kinds, rotation=30, ha="right")
    left.set_ylim(min(0.9, *(q[k]["precision"] for k in kinds), *(q[k]["recall"] for k in kinds)) - 0.02, 1.005)
    left.set_title(f"Detection on the labelled corpus ({results['corpus']['texts']} texts)")
    left.legend(loc="lower left")
    c = results["cost"]
    names = list(c)
    right.bar(
        [x - 0.2 for x in range(len(names))],
        [c[n]["baseline_us_per_kib"] for n in names],
        width=0.4,
        label="baseline: parse + lexicon predict",
    )
    right.bar(
        [x + 0.2 for x in range(len(names))],
        [c[n]["redact_us_per_kib"] for n in names],
        width=0.4,
        label="PII redaction",
    )
    for x, n in enumerate(names):
        right.annotate(
            f"{c[n]['ratio_to_baseline']:.2f}x", (x + 0.2, c[n]["redact_us_per_kib"]), ha="center", va="bottom"
        )
    right.set_xticks(list(range(len(names))), names)
    right.set_ylabel("microseconds per KiB of text")
    right.set_title("Cost per KiB, same run")
    right.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    q, h = results["quality"], results["heldout"]["quality"]
    quality_rows = [
        (
            k,
            f"{q[k]['precision']:.3f}",
            f"{q[k]['recall']:.3f}",
            q[k]["tp"],
            q[k]["fp"],
            q[k]["fn"],
            f"{h[k]['precision']:.3f} / {h[k]['recall']:.3f} ({h[k]['tp'] + h[k]['fn']})",
        )
        for k in (*TYPES, "overall")
    ]
    c = results["cost"]
    cost_rows = [
        (
            n,
            c[n]["kib"],
            c[n]["redact_us_per_kib"],
            c[n]["baseline_us_per_kib"],
            c[n]["redact_us_per_text"],
            f"{c[n]['ratio_to_baseline']:.2f}x",
        )
        for n in c
    ]
    return "\n\n".join(
        [
            "# PII detection and redaction",
            f"Corpus: {results['corpus']['texts']} texts, {results['corpus']['entities']} labelled entities "
            "(generated with a fixed seed + hand-written, near-misses included).",
            f"Held-out: {results['heldout']['texts']} hand-written texts ({results['heldout']['entities']} "
            "entities) written after tuning and never tuned on (tests/runtime/pii_corpus/heldout.txt).",
            markdown_table(
                ("type", "precision", "recall", "tp", "fp", "fn", "held-out precision / recall (entities)"),
                quality_rows,
            ),
            "Cost of `redact` (acme's rules) against the baseline a light request already pays on the same "
            "texts (OIP JSON decode + validation + lexicon predict), measured in the same run:",
            markdown_table(
                ("text", "KiB", "redact us/KiB", "baseline us/KiB", "redact us/text", "redact/baseline"), cost_rows
            ),
            "![pii](pii.png)",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pii", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per cost measurement (default: 1)")
    args = parser.parse_args(argv)

    print("pii: scoring the labelled corpus...", flush=True)
    cases, held = load(), heldout()
    results: dict[str, Any] = {
        "environment": environment(),
        "corpus": {"texts": len(cases), "entities": sum(len(c.spans) for c in cases)},
        "quality": quality(cases),
        "heldout": {"texts": len(held), "entities": sum(len(c.spans) for c in held), "quality": quality(held)},
        "cost": {},
    }
    overall = results["quality"]["overall"]
    print(f"  overall precision {overall['precision']:.3f}, recall {overall['recall']:.3f}", flush=True)
    held_overall = results["heldout"]["quality"]["overall"]
    print(
        f"  held-out ({len(held)} texts never tuned on): precision {held_overall['precision']:.3f}, "
        f"recall {held_overall['recall']:.3f}",
        flush=True,
    )
    samples = {
        "prose": [PROSE] * 20,
        "support": [SUPPORT] * 20,
        "corpus": [c.text for c in cases],
    }
    for name, texts in samples.items():
        print(f"pii: cost on {name} text ({len(texts)} texts)...", flush=True)
        results["cost"][name] = cost(texts, args.seconds)
        row = results["cost"][name]
        print(
            f"  {row['redact_us_per_kib']:.1f} us/KiB redaction vs {row['baseline_us_per_kib']:.1f} us/KiB "
            f"baseline ({row['ratio_to_baseline']:.2f}x)",
            flush=True,
        )
    plot(results, results_dir() / f"{NAME}.png")
    path = write_results(NAME, results, markdown(results))
    print(f"wrote {path} and {path.with_suffix('.md').name}, {NAME}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
