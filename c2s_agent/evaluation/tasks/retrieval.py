"""Knowledge retrieval: recall@k and MRR of :meth:`c2s_agent.knowledge.retrieve.KnowledgeBase.search` on a
query set with one relevant record per query (``evals/suites/data/retrieval_queries.yaml``).

The knowledge index is built on first use (``c2s knowledge build``; minutes on 2 cores), so build it before
timing a suite. One item per query."""

from __future__ import annotations

from pathlib import Path

import yaml

from ...errors import InputError
from . import Task


def default_queries() -> Path:
    """The bundled retrieval query set."""
    from ...resources import bundled

    return bundled("evals") / "suites" / "data" / "retrieval_queries.yaml"


def is_relevant(hit: dict, relevant: dict) -> bool:
    """A hit answers the query: same record id, or the right kind naming every gene (or containing the text)."""
    if "id" in relevant:
        return hit["id"] == relevant["id"]
    if hit["kind"] != relevant["kind"]:
        return False
    if "genes" in relevant and not set(relevant["genes"]) <= set(hit["genes"]):
        return False
    return relevant.get("text", "").lower() in hit["text"].lower()


class RetrievalRecall(Task):
    name = "retrieval_recall"
    description = "recall@k and MRR of hybrid knowledge retrieval on queries with a known answer"
    uses_dataset = False
    defaults = {"queries": None, "ks": [1, 5, 10], "limit": None}
    better = {"mrr": "higher", "recall@": "higher"}
    shard_size = 8

    def check_params(self, params, suite_path):
        params = super().check_params(params, suite_path)
        path = Path(params["queries"]) if params["queries"] else default_queries()
        if not path.is_absolute() and suite_path is not None:
            path = suite_path.parent / path
        if not path.exists():
            raise InputError(f"retrieval_recall queries {path}", "no such file", "point queries: at a YAML query set")
        params["queries"] = str(path.resolve())
        return params

    def items(self, cell, settings) -> list[dict]:
        try:
            items = yaml.safe_load(Path(cell.params["queries"]).read_text())
        except yaml.YAMLError as exc:
            raise InputError(
                cell.params["queries"],
                f"is not valid YAML ({str(exc).splitlines()[0]})",
                "quote queries that contain ':' or '?'",
            ) from None
        if not isinstance(items, list):
            raise InputError(
                cell.params["queries"], "must be a list of queries", "see evals/suites/data/retrieval_queries.yaml"
            )
        bad = [q.get("id", "?") for q in items if not {"id", "query", "relevant"} <= set(q)]
        if bad:
            raise InputError(f"queries {bad[:3]}", "lack one of id, query, relevant", "give every query all three keys")
        limit = cell.params["limit"]
        return [{"id": q["id"], "query": q["query"], "relevant": q["relevant"]} for q in items[: limit or None]]

    def run(self, cell, items, settings) -> list[dict]:
        from ... import knowledge

        kb = knowledge.load(settings, progress=False)
        depth = max(cell.params["ks"])
        out = []
        for it in items:
            hits = [h.model_dump(include={"id", "kind", "genes", "text"}) for h in kb.search(it["query"], top_k=depth)]
            rank = next((i + 1 for i, h in enumerate(hits) if is_relevant(h, it["relevant"])), None)
            out.append({"rank": rank, "top_ids": [h["id"] for h in hits]})
        return out

    def summarise(self, cell, results) -> dict:
        n = len(results)
        out = {"n_queries": n}
        for k in cell.params["ks"]:
            out[f"recall@{k}"] = sum(r["rank"] is not None and r["rank"] <= k for r in results) / n
        out["mrr"] = sum(1 / r["rank"] for r in results if r["rank"]) / n
        return out


TASK = RetrievalRecall()
