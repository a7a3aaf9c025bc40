"""Built-in knowledge: the bundled sources and the agent tools that use them.

Sources: CellPhoneDB v5, BioGRID, IntAct/IMEx, MSigDB Hallmark, Reactome/WikiPathways, marker and cell-cycle
lists, Cell Ontology. Tools: retrieve_interactions, ppi_neighbourhood, score_ligand_receptor, gene_set_lookup.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from c2s_agent import hookimpl, pl, tl
from c2s_agent.conventions.slots import CONDITION, PREDICTED_TYPE
from c2s_agent.errors import InputError
from c2s_agent.knowledge.records import KINDS
from c2s_agent.knowledge.retrieve import Hit
from c2s_agent.registry import KnowledgeSource
from c2s_agent.tl.hypotheses import communication_hypotheses
from c2s_agent.tools import Tool, ToolContext, ToolResult


def _kb(ctx: ToolContext):
    from c2s_agent.knowledge.index import load

    return load(ctx.settings, progress=False)


# ---------------------------------------------------------------- retrieve_interactions
class RetrieveInput(BaseModel):
    query: str | None = Field(None, description="the question or topic in words", json_schema_extra={"entity": "text"})
    genes: list[str] = Field([], description="gene symbols to look up exactly", json_schema_extra={"entity": "genes"})
    top_k: int = Field(
        10, ge=1, le=200, description="number of records to return", json_schema_extra={"entity": "number"}
    )
    kinds: list[Literal[KINDS]] = Field(
        [], description="keep only these kinds: ligand_receptor, ppi, gene_summary, gene_set, cell_type"
    )
    sources: list[str] = Field(
        [],
        description="keep only sources whose name contains one of these "
        "(e.g. 'CellPhoneDB', 'BioGRID', 'IntAct', 'Hallmark', 'Cell Ontology')",
    )


class RetrieveOutput(BaseModel):
    hits: list[Hit]
    genes_matched: list[str]


def retrieve_interactions(ctx: ToolContext, args: RetrieveInput) -> ToolResult:
    import pandas as pd

    kb = _kb(ctx)
    hits = kb.search(
        query=args.query, genes=args.genes, top_k=args.top_k, kinds=args.kinds or None, sources=args.sources or None
    )
    matched = [s for g in args.genes for s in kb.resolve(g)] + (kb.genes_in(args.query) if args.query else [])
    out = RetrieveOutput(hits=list(hits), genes_matched=list(dict.fromkeys(matched)))
    if hits:
        ctx.save_table(
            pd.DataFrame([h.model_dump(exclude={"attrs"}) for h in hits]),
            "knowledge_hits",
            "Retrieved knowledge records",
        )
    what = args.query or ", ".join(args.genes)
    lines = "; ".join(h.text for h in hits[:5])
    return ToolResult(
        output=out,
        evidence=f"{len(hits)} knowledge records for '{what}'" + (f"; top: {lines}" if hits else " (none found)"),
    )


# ---------------------------------------------------------------- ppi_neighbourhood
class NeighbourhoodInput(BaseModel):
    genes: list[str] = Field(
        min_length=1, description="gene symbols whose partners to list", json_schema_extra={"entity": "genes"}
    )
    max_partners: int = Field(
        25, ge=1, le=1000, description="partners per gene, best supported first", json_schema_extra={"entity": "number"}
    )
    min_sources: int = Field(1, ge=1, le=3, description="keep partners reported by at least this many sources")


class NeighbourhoodOutput(BaseModel):
    partners: dict[str, list[str]]
    n_partners: dict[str, int]
    shared_partners: list[str]


def ppi_neighbourhood(ctx: ToolContext, args: NeighbourhoodInput) -> ToolResult:
    from c2s_agent.knowledge.retrieve import neighbourhood

    table = neighbourhood(_kb(ctx), args.genes, args.max_partners, args.min_sources)
    if ctx.adata is not None:
        measured = set(ctx.adata.var_names.str.upper())
        table["measured_in_data"] = table.partner.isin(measured)
    partners = {g: sub.partner.tolist() for g, sub in table.groupby("gene", sort=False)}
    counts = {g: int(n) for g, n in table.attrs.get("n_total", {}).items()}
    shared = sorted(set.intersection(*(set(v) for v in partners.values()))) if len(partners) > 1 else []
    ctx.save_table(table, "ppi_neighbourhood", "Protein-interaction partners")
    out = NeighbourhoodOutput(partners=partners, n_partners=counts, shared_partners=shared)
    ev = "; ".join(f"{g}: {counts.get(g, 0)} partners, best supported {', '.join(p[:8])}" for g, p in partners.items())
    return ToolResult(
        output=out,
        evidence=f"Protein-interaction neighbourhood (BioGRID, IntAct, CellPhoneDB): {ev}"
        + (f"; shared partners: {', '.join(shared[:10])}" if shared else ""),
    )


# ---------------------------------------------------------------- score_ligand_receptor
class LRInput(BaseModel):
    groupby: str | None = Field(
        None,
        description="obs column holding the cell groups (e.g. cell type); default the "
        "predicted cell types obs['c2s_cell_type'] when the cells were annotated, else the "
        "data's cell type column",
        json_schema_extra={"entity": "obs_column"},
    )
    source: list[str] = Field(
        min_length=1,
        description="sending group(s): values of the groupby column",
        json_schema_extra={"entity": "obs_values"},
    )
    target: list[str] = Field(
        min_length=1,
        description="receiving group(s): values of the groupby column",
        json_schema_extra={"entity": "obs_values"},
    )
    condition_column: str | None = Field(
        None,
        description="obs column with conditions to score separately (e.g. control vs stimulated)",
        json_schema_extra={"entity": "obs_column"},
    )
    condition_value: str | None = Field(
        None, description="score only this condition", json_schema_extra={"entity": "obs_value"}
    )
    n_perms: int = Field(
        1000,
        ge=10,
        le=10_000,
        description="label permutations for the p-values",
        json_schema_extra={"entity": "number"},
    )
    min_fraction: float = Field(0.1, ge=0, lt=1, description="fraction of cells that must express each subunit")
    top: int = Field(20, ge=1, le=200, description="pairs to report and plot")


class PairOut(BaseModel):
    condition: str
    pair: str
    score: float
    pvalue: float
    ligand_mean: float
    receptor_mean: float

    @field_validator("score", "ligand_mean", "receptor_mean")
    @classmethod
    def _rounded(cls, value: float) -> float:
        return round(value, 4)


class LROutput(BaseModel):
    n_interactions: int
    n_significant: dict[str, int]
    top_pairs: list[PairOut]
    groupby: str
    source: list[str] = Field(description="sending groups scored")
    target: list[str] = Field(description="receiving groups scored")
    absent: list[str] = Field(description="requested groups no cell holds")


def score_ligand_receptor(ctx: ToolContext, args: LRInput) -> ToolResult:
    res = tl.ligand_receptor(
        ctx.adata,
        args.source,
        args.target,
        args.groupby,
        args.condition_column,
        args.condition_value,
        args.n_perms,
        args.min_fraction,
    )
    table, n_sig, top = res.table, res.n_significant(), res.top(args.top)
    ctx.save_table(table, "ligand_receptor", "Ligand-receptor scores (CellPhoneDB v5 pairs)")
    ctx.save_plot(pl.ligand_receptor(table, top=args.top), "ligand_receptor_dotplot", "Top ligand-receptor pairs")
    pairs = [PairOut(**r) for r in top.to_dict("records")]
    out = LROutput(
        n_interactions=int(table.pair.nunique()),
        n_significant=n_sig,
        top_pairs=pairs,
        groupby=res.groupby,
        source=res.source,
        target=res.target,
        absent=res.absent,
    )
    per = "; ".join(
        f"{c}: {n_sig.get(c, 0)} significant (p<0.05), top "
        + ", ".join([p.pair for p in pairs if p.condition == c][:5])
        for c in sorted(table[CONDITION].unique())
    )
    made = " (cell types predicted by the C2S model)" if res.groupby == PREDICTED_TYPE else ""
    if res.absent:
        made += f"; not found in any cell, so left out: {', '.join(res.absent)}"
    return ToolResult(
        output=out,
        evidence=f"Ligand-receptor scoring {'+'.join(res.source)} -> "
        f"{'+'.join(res.target)} grouped by obs['{res.groupby}']{made} over {out.n_interactions} CellPhoneDB "
        f"pairs, {args.n_perms} permutations: {per}",
    )


def every_condition(args: dict) -> tuple[dict, str | None]:
    """Hypothesis mode scores every condition, to compare the one asked about with its reference."""
    if not (args.get("condition_column") and args.get("condition_value")):
        return args, None
    return {k: v for k, v in args.items() if k != "condition_value"}, args["condition_value"]


# ---------------------------------------------------------------- gene_set_lookup
class GeneSetInput(BaseModel):
    query: str | None = Field(None, description="gene-set name or topic in words", json_schema_extra={"entity": "text"})
    genes: list[str] = Field(
        [], description="genes to test for overlap with every gene set", json_schema_extra={"entity": "genes"}
    )
    top_k: int = Field(10, ge=1, le=100, description="gene sets to return", json_schema_extra={"entity": "number"})


class GeneSetOut(BaseModel):
    name: str
    collection: str
    source: str
    size: int
    overlap: list[str] = []
    pvalue: float | None = None
    genes: list[str]


class GeneSetOutput(BaseModel):
    sets: list[GeneSetOut]


def gene_set_lookup(ctx: ToolContext, args: GeneSetInput) -> ToolResult:
    import pandas as pd

    from c2s_agent.knowledge.genesets import lookup_gene_sets

    if not args.query and not args.genes:
        raise InputError("gene_set_lookup", "needs a query or genes", "name a gene set, a topic or some genes")
    sets = lookup_gene_sets(
        query=args.query, genes=args.genes, top_k=args.top_k, kb=_kb(ctx) if args.query and not args.genes else None
    )
    out = GeneSetOutput(sets=[GeneSetOut(**s) for s in sets])
    if sets:
        ctx.save_table(
            pd.DataFrame(sets).assign(genes=lambda d: d.genes.map(" ".join), overlap=lambda d: d.overlap.map(" ".join)),
            "gene_sets",
            "Gene sets",
        )
    desc = "; ".join(
        f"{s['name']} ({s['size']} genes"
        + (f", overlap {len(s['overlap'])}, p={s['pvalue']:.2g}" if s["pvalue"] is not None else "")
        + ")"
        for s in sets[:5]
    )
    return ToolResult(output=out, evidence=f"Gene sets for '{args.query or ', '.join(args.genes[:10])}': {desc}")


@hookimpl
def register_knowledge_sources(register):
    from c2s_agent.knowledge import sources as s

    files = {k: tuple(v) for k, v in s.default_files().items()}
    register(KnowledgeSource("cellphonedb", s.load_cellphonedb, files["cellphonedb"]))
    register(KnowledgeSource("biogrid", s.load_biogrid, files["biogrid"]))
    register(KnowledgeSource("intact", s.load_intact, files["intact"]))
    register(KnowledgeSource("hallmark", lambda path=None: s.load_gmt(path or files["hallmark"][0]), files["hallmark"]))
    register(
        KnowledgeSource(
            "reactome_wikipathways",
            lambda path=None: s.load_gmt(path or files["reactome_wikipathways"][0]),
            files["reactome_wikipathways"],
        )
    )
    register(
        KnowledgeSource(
            "markers", lambda path=None: s.load_gmt(*([path] if path else files["markers"])), files["markers"]
        )
    )
    register(KnowledgeSource("cell_ontology", s.load_cell_ontology, files["cell_ontology"]))


@hookimpl
def register_tools(register):
    for tool in [
        Tool(
            name="retrieve_interactions",
            description="Look up curated interaction knowledge (CellPhoneDB ligand-receptor pairs, BioGRID and IntAct "
            "protein interactions, per-gene partner summaries, MSigDB gene sets, Cell Ontology "
            "definitions) for genes or a topic, with the source of every fact.",
            examples=[
                "What receptors does CXCL10 bind?",
                "Which ligands signal through IFNGR1?",
                "What is known about the interaction between IL6 and IL6ST?",
                "Find ligand-receptor pairs involved in interferon signalling",
                "What does the Cell Ontology say about classical monocytes?",
                "What are the known interaction partners of STAT1?",
                "Look up prior knowledge on TNF signalling",
            ],
            input_model=RetrieveInput,
            output_model=RetrieveOutput,
            run=retrieve_interactions,
            needs_data=False,
        ),
        Tool(
            name="ppi_neighbourhood",
            description="List the physical protein-interaction partners of genes (BioGRID, IntAct/IMEx and "
            "CellPhoneDB), ranked by how many sources and records support each pair, and the partners "
            "the genes share.",
            examples=[
                "Which proteins interact with ISG15?",
                "Show the protein interaction network around STAT1 and IRF9",
                "What are the physical binding partners of JAK1?",
                "Which partners do MX1 and OAS1 share?",
                "Protein-protein interactions of CD74",
                "Which protein interactions link IRF1 and JAK2 to the interferon response genes?",
            ],
            input_model=NeighbourhoodInput,
            output_model=NeighbourhoodOutput,
            run=ppi_neighbourhood,
            needs_data=False,
        ),
        Tool(
            name="score_ligand_receptor",
            description="Score cell-cell communication between a sending and a receiving group of cells: CellPhoneDB "
            "ligand-receptor pairs ranked by expression (ligand in senders, receptor in receivers, "
            "complexes need every subunit) with a permutation p-value, per condition; writes a table and "
            "a dot plot.",
            examples=[
                "Any crosstalk from the NK cells to the B cells?",
                "I'd like mechanistic ideas for how the monocytes could communicate with the T cells under stimulation",
                "Which ligand-receptor pairs connect monocytes to T cells?",
                "How do CD14 monocytes talk to CD4 T cells after stimulation?",
                "Cell-cell communication between monocytes and T cells in control versus stimulated",
                "Which signals do monocytes send to NK cells?",
                "Score ligand receptor interactions between B cells and T cells",
                "Does interferon stimulation change signalling from monocytes to T cells?",
                "Find interactions from monocytes to T cells",
                "What interactions are there between B cells and NK cells?",
                "Propose hypotheses for how B cells signal to T cells",
                "Which ligand-receptor pairs connect cluster 1 to cluster 4?",
            ],
            input_model=LRInput,
            output_model=LROutput,
            run=score_ligand_receptor,
            requires=("obs:{groupby}",),
            produces=("uns:c2s_lr",),
            cost="medium",
            hypotheses=communication_hypotheses,
            focus_args=every_condition,
        ),
        Tool(
            name="gene_set_lookup",
            description="Find gene sets (MSigDB Hallmark, Reactome, WikiPathways, T-cell markers, cell-cycle phases) "
            "by name or topic, or test a list of genes for overlap with every gene set (hypergeometric "
            "p-value).",
            examples=[
                "Which curated gene sets are closest to hypoxia?",
                "List the pathways that match glycolysis",
                "Which genes are in the Hallmark interferon alpha response?",
                "Which pathways are enriched in ISG15, MX1, IFI6, IFIT3 and OAS1?",
                "Find gene sets about antigen presentation on MHC class I",
                "What gene set contains STAT1, IRF1 and GBP1?",
                "Show the G2/M cell cycle genes",
            ],
            input_model=GeneSetInput,
            output_model=GeneSetOutput,
            run=gene_set_lookup,
            needs_data=False,
        ),
    ]:
        register(tool)
