"""Loaders turning the knowledge files into typed records.

Each loader takes an optional path (default: the bundled copy under ``knowledge/``) and yields records. The
CellPhoneDB loader also reads a directory or zip holding the ``*_input.csv`` files (e.g. a cellphonedb-data
release archive); the BioGRID loader also reads BioGRID TAB3 files (``.txt`` or ``.zip``) as released.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from ..resources import bundled
from .records import CellType, GeneSet, LigandReceptor, ProteinInteraction

CPDB_FILES = ("interaction_input.csv", "gene_input.csv", "complex_input.csv")
CPDB_SOURCE = "CellPhoneDB v5.0.0"
BIOGRID_SOURCE = "BioGRID 3.4.126"
INTACT_SOURCE = "IntAct/IMEx 2019-06"
ONTOLOGY_SOURCE = "Cell Ontology 2026-03-26"


def knowledge_dir() -> Path:
    return bundled("knowledge")


def default_files() -> dict[str, list[Path]]:
    """The bundled files behind each built-in source (checksummed in the index manifest)."""
    k = knowledge_dir()
    return {
        "cellphonedb": [k / "cellphonedb_v5" / f for f in CPDB_FILES],
        "biogrid": [k / "ppi" / "biogrid_3.4.126_human_ppi_symbols.csv"],
        "intact": [k / "ppi" / "psicquic_imex_intact_human_ppi_2019_symbols.csv"],
        "hallmark": [k / "gene_sets" / "h.all.v7.5.1.symbols.gmt"],
        "reactome_wikipathways": [k / "gene_sets" / "c2.cp.reactome_wikipathways.v7.5.1.symbols.gmt"],
        "markers": [
            k / "gene_sets" / "pegasus_human_t_cell_markers.gmt",
            k / "gene_sets" / "pegasus_cell_cycle_human.gmt",
        ],
        "cell_ontology": [k / "ontology" / "cl_ontology_v2026-03-26.json"],
        "gene_info": [k / "gene_info" / "uniprot_human_reviewed_20190527.tsv"],
    }


def _need(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"no such {what} file or folder", "check the path, or omit it to use the bundled copy")
    return path


BROKEN_FIX = "fix or remove the broken rows, or omit the path to use the bundled copy"


def _table(source, name, read, columns=()):
    """``read()`` a table; unreadable rows or missing ``columns`` become an InputError naming ``name``."""
    try:
        df = read()
    except (ValueError, UnicodeDecodeError) as exc:  # pandas ParserError is a ValueError
        raise InputError(name, f"could not be read as a table ({str(exc).splitlines()[0][:200]})", BROKEN_FIX) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(name, f"has no column(s) {missing}", f"give a {source} table with columns {list(columns)}")
    return df


# ---------------------------------------------------------------------------------------------- CellPhoneDB
CPDB_COLUMNS = {
    "gene_input.csv": ("uniprot", "hgnc_symbol"),
    "complex_input.csv": ("complex_name",),
    "interaction_input.csv": (
        "partner_a",
        "partner_b",
        "id_cp_interaction",
        "classification",
        "directionality",
        "source",
        "modulatory_effect",
    ),
}


def _read_cpdb_tables(path: Path) -> dict:
    """The three CellPhoneDB input tables from a folder or a zip (files may sit in a sub-folder)."""
    import pandas as pd

    path = _need(path, "CellPhoneDB")
    tables = {}
    if path.is_dir():
        for name in CPDB_FILES:
            hits = sorted(path.rglob(name))
            if hits:
                tables[name] = _table("CellPhoneDB", hits[0], lambda h=hits[0]: pd.read_csv(h), CPDB_COLUMNS[name])
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in CPDB_FILES:
                members = sorted(m for m in zf.namelist() if m.rsplit("/", 1)[-1] == name)
                if members:
                    data = zf.read(members[0])
                    tables[name] = _table(
                        "CellPhoneDB",
                        f"{path}:{members[0]}",
                        lambda d=data: pd.read_csv(io.BytesIO(d)),
                        CPDB_COLUMNS[name],
                    )
    else:
        raise InputError(
            path, "is neither a folder nor a zip file", "give the CellPhoneDB data folder or its release zip"
        )
    missing = [n for n in CPDB_FILES if n not in tables]
    if missing:
        raise InputError(
            path,
            f"holds no {', '.join(missing)}",
            "give a CellPhoneDB v5 data folder or release zip with the *_input.csv tables",
        )
    return tables


def cellphonedb_tables(path: Path | None = None):
    """(interactions, uniprot->symbol, complex->member symbols) from CellPhoneDB input tables."""
    t = _read_cpdb_tables(Path(path) if path else knowledge_dir() / "cellphonedb_v5")
    genes = t["gene_input.csv"].dropna(subset=["uniprot", "hgnc_symbol"]).drop_duplicates("uniprot")
    symbol = dict(zip(genes["uniprot"], genes["hgnc_symbol"].str.upper()))
    cx = t["complex_input.csv"]
    ucols = [c for c in cx.columns if c.startswith("uniprot_")]
    complexes = {}
    for row in cx[["complex_name", *ucols]].itertuples(index=False):
        members = [symbol.get(u) for u in row[1:] if isinstance(u, str) and u]
        if all(members) and members:
            complexes[row[0]] = tuple(dict.fromkeys(members))
    return t["interaction_input.csv"], symbol, complexes


def _partner(pid: str, symbol: dict, complexes: dict) -> tuple[str, tuple[str, ...]] | None:
    if pid in complexes:
        return pid, complexes[pid]
    if pid in symbol:
        return symbol[pid], (symbol[pid],)
    return None


def load_cellphonedb(path: Path | None = None) -> Iterator[LigandReceptor]:
    """CellPhoneDB interactions (partner A -> partner B, complexes expanded to subunits)."""
    inter, symbol, complexes = cellphonedb_tables(path)
    for i, row in enumerate(inter.fillna("").itertuples(index=False)):
        a, b = _partner(row.partner_a, symbol, complexes), _partner(row.partner_b, symbol, complexes)
        if a is None or b is None:
            continue
        yield LigandReceptor(
            id=f"cellphonedb:{row.id_cp_interaction or i}:{a[0]}>{b[0]}",
            source=CPDB_SOURCE,
            ligand=a[0],
            receptor=b[0],
            ligand_genes=a[1],
            receptor_genes=b[1],
            classification=str(row.classification),
            directionality=str(row.directionality or "unknown"),
            evidence=str(row.source),
            attrs={"modulatory_effect": str(row.modulatory_effect)} if row.modulatory_effect else {},
        )


# ---------------------------------------------------------------------------------------------- PPI
BIOGRID_TAB3_COLS = (
    "Official Symbol Interactor A",
    "Official Symbol Interactor B",
    "Experimental System Type",
    "Organism ID Interactor A",
    "Organism ID Interactor B",
)


def _read_biogrid_tab3(path: Path):
    """Human physical pairs from a BioGRID TAB3 file or zip: undirected, de-duplicated, counted."""
    import pandas as pd

    def read(handle):
        df = pd.read_csv(handle, sep="\t", usecols=list(BIOGRID_TAB3_COLS), dtype=str, low_memory=False)
        return df

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.lower().endswith((".txt", ".tab3", ".tsv"))]
            if not members:
                raise InputError(path, "holds no TAB3 text file", "give a BioGRID TAB3 release zip")
            df = pd.concat([read(io.BytesIO(zf.read(m))) for m in members], ignore_index=True)
    else:
        df = read(path)
    df = df[
        (df["Experimental System Type"].str.lower() == "physical")
        & (df["Organism ID Interactor A"] == "9606")
        & (df["Organism ID Interactor B"] == "9606")
    ]
    a = df["Official Symbol Interactor A"].str.upper()
    b = df["Official Symbol Interactor B"].str.upper()
    lo, hi = a.where(a <= b, b), b.where(a <= b, a)
    pairs = pd.DataFrame({"symbol_a": lo, "symbol_b": hi}).dropna()
    return pairs.groupby(["symbol_a", "symbol_b"]).size().rename("n_records").reset_index()


def _read_ppi_table(path: Path):
    import pandas as pd

    path = _need(path, "protein-interaction")
    try:
        head = pd.read_csv(path, nrows=0, sep=None, engine="python").columns if not zipfile.is_zipfile(path) else []
    except Exception as exc:  # noqa: BLE001 - any parse failure means the file is unusable
        raise InputError(path, f"could not be read as a table ({exc})", "give a CSV or a BioGRID TAB3 file") from None
    if zipfile.is_zipfile(path) or BIOGRID_TAB3_COLS[0] in head:
        return _read_biogrid_tab3(path)
    if not {"symbol_a", "symbol_b"} <= set(head):
        raise InputError(
            path,
            "has neither symbol_a/symbol_b columns nor BioGRID TAB3 columns",
            "give the bundled-format CSV or a BioGRID TAB3 release file",
        )
    df = _table("protein-interaction", path, lambda: pd.read_csv(path, dtype={"symbol_a": str, "symbol_b": str}))
    if "n_records" not in df:
        df["n_records"] = 1
    counts = pd.to_numeric(df["n_records"], errors="coerce")
    if counts.isna().any():
        row = int(counts.isna().to_numpy().argmax()) + 2
        raise InputError(f"{path}:{row}", f"n_records {df['n_records'].iloc[row - 2]!r} is not a number", BROKEN_FIX)
    df["n_records"] = counts
    return df


def _load_ppi(path: Path, source: str, prefix: str) -> Iterator[ProteinInteraction]:
    """Pairs upper-cased, ordered and merged (rows that name the same pair add their record counts)."""
    import pandas as pd

    df = _read_ppi_table(path).dropna(subset=["symbol_a", "symbol_b"])
    a, b = df.symbol_a.astype(str).str.upper(), df.symbol_b.astype(str).str.upper()
    df = pd.DataFrame({"a": a.where(a <= b, b), "b": b.where(a <= b, a), "n": df.n_records.astype(int).clip(lower=1)})
    df = df[(df.a != "") & (df.b != "") & (df.a != df.b)].groupby(["a", "b"], sort=True).n.sum().reset_index()
    for a, b, n in zip(df.a, df.b, df.n):
        yield ProteinInteraction(id=f"{prefix}:{a}|{b}", source=source, gene_a=a, gene_b=b, n_records=int(n))


def load_biogrid(path: Path | None = None) -> Iterator[ProteinInteraction]:
    """BioGRID human physical interactions (bundled 3.4.126 pairs, or a TAB3 release file/zip)."""
    src = BIOGRID_SOURCE if path is None else f"BioGRID ({Path(path).name})"
    yield from _load_ppi(Path(path) if path else default_files()["biogrid"][0], src, "biogrid")


def load_intact(path: Path | None = None) -> Iterator[ProteinInteraction]:
    """IntAct/IMEx (with MINT, UniProt, MatrixDB ...) human pairs from the PSICQUIC 2019 dump."""
    yield from _load_ppi(Path(path) if path else default_files()["intact"][0], INTACT_SOURCE, "intact")


# ---------------------------------------------------------------------------------------------- gene sets
GMT_COLLECTIONS = {
    "h.all": ("MSigDB Hallmark", "MSigDB Hallmark v7.5.1"),
    "c2.cp.reactome_wikipathways": ("MSigDB C2 Reactome/WikiPathways", "MSigDB C2 v7.5.1"),
    "pegasus_human_t_cell_markers": ("T-cell subset markers", "pegasus 1.10.2 markers"),
    "pegasus_cell_cycle_human": ("cell-cycle phase genes", "pegasus 1.10.2 cell cycle"),
}


def read_gmt(path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """(name, description, genes) per line of a GMT file."""
    path = _need(path, "GMT")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise InputError(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})", BROKEN_FIX) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            raise InputError(
                f"{path}:{n}", "is not a GMT line (name<TAB>description<TAB>genes...)", "fix the line or remove it"
            )
        yield parts[0], parts[1], list(dict.fromkeys(g.strip().upper() for g in parts[2:] if g.strip()))


def _collection(path: Path) -> tuple[str, str]:
    for key, value in GMT_COLLECTIONS.items():
        if path.name.startswith(key):
            return value
    return path.stem, f"GMT {path.name}"


def load_gmt(*paths: Path) -> Iterator[GeneSet]:
    """Gene sets from GMT files; names get a prefix when several files are read."""
    for path in paths:
        collection, source = _collection(Path(path))
        for name, desc, genes in read_gmt(Path(path)):
            if genes:
                yield GeneSet(
                    id=f"geneset:{name}",
                    source=source,
                    name=name,
                    collection=collection,
                    description=desc,
                    members=tuple(genes),
                )


class GeneSetList(list):
    """A gene list that also says where it came from (``.source``, ``.collection``)."""

    def __init__(self, genes, source: str = "", collection: str = ""):
        super().__init__(genes)
        self.source, self.collection = source, collection


def load_gene_sets() -> dict[str, list[str]]:
    """All bundled GMT gene sets by name (Hallmark, Reactome, WikiPathways, T-cell markers, cell cycle).

    Each value is a :class:`GeneSetList`: a plain list of upper-case symbols with ``.source`` and
    ``.collection`` attributes.
    """
    return {k: GeneSetList(v, v.source, v.collection) for k, v in _gene_sets().items()}


@functools.lru_cache(maxsize=1)
def _gene_sets() -> dict[str, GeneSetList]:
    files = default_files()
    out: dict[str, GeneSetList] = {}
    for key in ("hallmark", "reactome_wikipathways", "markers"):
        for rec in load_gmt(*files[key]):
            out[rec.name] = GeneSetList(rec.members, rec.source, rec.collection)
    return out


# ---------------------------------------------------------------------------------------------- ontology
def load_cell_ontology(path: Path | None = None) -> Iterator[CellType]:
    """Live Cell Ontology terms that have a definition (JSON from cellxgene-ontology-guide, or the flat TSV)."""
    path = _need(Path(path) if path else default_files()["cell_ontology"][0], "Cell Ontology")
    if path.suffix == ".tsv":
        import pandas as pd

        cols = ("cl_id", "label", "description", "deprecated", "synonyms", "parents")
        df = _table("Cell Ontology TSV", path, lambda: pd.read_csv(path, sep="\t", dtype=str), cols).fillna("")
        terms = {
            r.cl_id: {
                "label": r.label,
                "description": r.description,
                "deprecated": r.deprecated == "True",
                "synonyms": [s for s in r.synonyms.split("|") if s],
                "ancestors": {p: 1 for p in r.parents.split("|") if p},
            }
            for r in df.itertuples()
        }
    else:
        try:
            terms = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(path, f"is not valid JSON ({exc})", "give the Cell Ontology JSON or TSV") from None
        if not isinstance(terms, dict) or not all(isinstance(t, dict) for t in terms.values()):
            raise InputError(path, "is not a mapping of CL ids to terms", "give the Cell Ontology JSON or TSV")
    for cl_id, t in terms.items():
        if t.get("deprecated") or not t.get("description") or not cl_id.startswith("CL:"):
            continue
        if not t.get("label"):
            raise InputError(f"{path} {cl_id}", "has no label", BROKEN_FIX)
        parents = tuple(k for k, d in (t.get("ancestors") or {}).items() if d == 1)
        yield CellType(
            id=cl_id,
            source=ONTOLOGY_SOURCE,
            cl_id=cl_id,
            label=t["label"],
            definition=t["description"],
            synonyms=tuple(t.get("synonyms") or ()),
            parents=parents,
        )


# ---------------------------------------------------------------------------------------------- gene info
@functools.cache
def human_symbols() -> frozenset[str]:
    """Every human gene symbol the bundled UniProt table names (upper case): genes a question may name for the
    knowledge tools whether or not a dataset measures them."""
    return frozenset(load_gene_info())


def load_gene_info(path: Path | None = None) -> dict[str, dict]:
    """Symbol -> {"protein": first protein name, "aliases": [...]} from the UniProt reviewed human table."""
    import pandas as pd

    path = _need(Path(path) if path else default_files()["gene_info"][0], "UniProt table")
    cols = ("Protein names", "Gene names")
    df = _table(
        "UniProt", path, lambda: pd.read_csv(path, sep="\t", dtype=str, usecols=lambda c: c in cols), cols
    ).dropna()
    info: dict[str, dict] = {}
    for prot, names in zip(df["Protein names"], df["Gene names"]):
        tokens = names.upper().split()
        if not tokens or tokens[0] in info:
            continue
        info[tokens[0]] = {"protein": prot.split(" (")[0].strip(), "aliases": tokens[1:]}
    return info
