"""Typed knowledge records. Each record renders itself as one short factual sentence naming its source.

:class:`Record` is what a knowledge source yields and what the index stores: an id, the source, a kind, the
text, the genes it is about (primary gene first) and whether it belongs in the semantic index. The typed
subclasses hold the fields of each kind and build ``text`` from them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..conventions.slots import CELL_TYPE

#: Kinds the built-in sources produce; plugins may use other kind names.
KINDS = ("ligand_receptor", "ppi", "gene_summary", "gene_set", CELL_TYPE)


class Record(BaseModel):
    """One retrievable fact. ``semantic=False`` records are served by exact gene lookup only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, description="unique id, '<source>:<key>'")
    source: str = Field(min_length=1, description="source name and release, e.g. 'CellPhoneDB v5.0.0'")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    text: str = Field("", description="one short factual sentence; filled by typed records")
    genes: tuple[str, ...] = ()
    semantic: bool = True
    weight: float = Field(1.0, ge=0, description="evidence weight used to rank exact matches")
    attrs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _needs_text(self):
        if not self.text.strip():
            raise ValueError("a record needs a non-empty text")
        return self


def _join(genes) -> str:
    return "+".join(genes)


class LigandReceptor(Record):
    """A CellPhoneDB interaction, partner A -> partner B; complexes expanded to their subunit genes."""

    kind: str = "ligand_receptor"
    ligand: str = Field(description="partner A as CellPhoneDB names it (gene symbol or complex name)")
    receptor: str = Field(description="partner B (gene symbol or complex name)")
    ligand_genes: tuple[str, ...]
    receptor_genes: tuple[str, ...]
    classification: str = ""
    directionality: str = "Ligand-Receptor"
    evidence: str = ""
    text: str = ""
    genes: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _render(cls, data: dict) -> dict:
        data = dict(data)
        lig, rec = tuple(data["ligand_genes"]), tuple(data["receptor_genes"])
        data.setdefault("genes", tuple(dict.fromkeys(lig + rec)))
        if not data.get("text"):

            def side(name, genes):
                return _join(genes) + (f" (complex {name})" if len(genes) > 1 or name not in genes else "")

            direction = data.get("directionality", "Ligand-Receptor")
            verb = {
                "Ligand-Receptor": "ligand {a} binds receptor {b}",
                "Adhesion-Adhesion": "adhesion molecule {a} binds {b}",
            }.get(direction, "{a} interacts with {b}")
            sentence = verb.format(a=side(data["ligand"], lig), b=side(data["receptor"], rec))
            cls_ = data.get("classification") or ""
            data["text"] = (
                f"{sentence[0].upper()}{sentence[1:]}"
                + (f"; {cls_}" if cls_ else "")
                + f" ({direction}). [{data['source']}]"
            )
        return data


class ProteinInteraction(Record):
    """A physical protein-protein interaction between two genes (undirected)."""

    kind: str = "ppi"
    semantic: bool = False
    gene_a: str
    gene_b: str
    n_records: int = Field(1, ge=1, description="number of source rows behind the pair")
    text: str = ""
    genes: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _render(cls, data: dict) -> dict:
        data = dict(data)
        data.setdefault("genes", (data["gene_a"], data["gene_b"]))
        n = int(data.get("n_records", 1))
        data.setdefault("weight", float(n))
        if not data.get("text"):
            data["text"] = (
                f"{data['gene_a']} physically interacts with {data['gene_b']} "
                f"({n} record{'s' if n != 1 else ''}). [{data['source']}]"
            )
        return data


class GeneSet(Record):
    """A named gene set (MSigDB Hallmark, Reactome, WikiPathways, marker lists)."""

    kind: str = "gene_set"
    name: str
    collection: str
    description: str = ""
    members: tuple[str, ...]
    text: str = ""
    genes: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _render(cls, data: dict) -> dict:
        data = dict(data)
        members = tuple(data["members"])
        data.setdefault("genes", members)
        if not data.get("text"):
            words = data["name"].split("_", 1)[-1].replace("_", " ").lower() if "_" in data["name"] else data["name"]
            desc = data.get("description") or ""
            about = desc if desc and not desc.startswith("http") else words
            shown = ", ".join(members[:12]) + (", ..." if len(members) > 12 else "")
            data["text"] = (
                f"Gene set {data['name']} ({data['collection']}): {about}; {len(members)} genes "
                f"including {shown}. [{data['source']}]"
            )
        return data


class CellType(Record):
    """A Cell Ontology term with its definition and synonyms."""

    kind: str = CELL_TYPE
    cl_id: str = Field(pattern=r"^CL:\d{7}$")
    label: str
    definition: str = ""
    synonyms: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    text: str = ""

    @model_validator(mode="before")
    @classmethod
    def _render(cls, data: dict) -> dict:
        data = dict(data)
        if not data.get("text"):
            syn = tuple(data.get("synonyms") or ())
            also = f" (also: {', '.join(syn[:4])})" if syn else ""
            data["text"] = (
                f"Cell type {data['label']} {data['cl_id']}{also}: "
                f"{data.get('definition') or 'no definition'} [{data['source']}]"
            )
        return data


class GeneSummary(Record):
    """A per-gene digest of interaction partners, derived from the other records."""

    kind: str = "gene_summary"
    gene: str
    protein: str = ""
    ligand_of: tuple[str, ...] = ()
    receptor_of: tuple[str, ...] = ()
    other_lr: tuple[str, ...] = ()
    ppi_partners: tuple[str, ...] = ()
    n_ppi: int = 0
    text: str = ""
    genes: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _render(cls, data: dict) -> dict:
        data = dict(data)
        g = data["gene"]
        parts = []
        for key, what in (("ligand_of", "ligand for"), ("receptor_of", "receptor for"), ("other_lr", "binds")):
            if data.get(key):
                parts.append(f"{what} {', '.join(data[key])}")
        if data.get("ppi_partners"):
            parts.append(
                f"physical partners include {', '.join(data['ppi_partners'])}"
                + (f" ({data['n_ppi']} in total)" if data.get("n_ppi", 0) > len(data["ppi_partners"]) else "")
            )
        if not data.get("genes"):
            partner_genes = []
            for key in ("ligand_of", "receptor_of", "other_lr", "ppi_partners"):
                for item in data.get(key) or ():
                    partner_genes.extend(item.split(" (")[0].split("+"))
            data["genes"] = tuple(dict.fromkeys([g, *partner_genes]))
        if not data.get("text"):
            protein = f" ({data['protein']})" if data.get("protein") else ""
            data["text"] = f"{g}{protein}: {'; '.join(parts) or 'no recorded partners'}. [{data['source']}]"
        return data
