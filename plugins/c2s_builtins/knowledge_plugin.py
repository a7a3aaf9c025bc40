"""Built-in knowledge: the bundled sources and the agent tools that use them.

Sources: CellPhoneDB v5, BioGRID, IntAct/IMEx, MSigDB Hallmark, Reactome/WikiPathways, marker and cell-cycle
lists, Cell Ontology. Tools: retrieve_interactions, ppi_neighbourhood, score_ligand_receptor, gene_set_lookup.
"""

from __future__ import annotations

from c2s_agent import hookimpl


@hookimpl
def register_knowledge_sources(register):
    from c2s_agent.knowledge import sources as s

    files = s.default_files()
    register("cellphonedb", s.load_cellphonedb, files["cellphonedb"])
    register("biogrid", s.load_biogrid, files["biogrid"])
    register("intact", s.load_intact, files["intact"])
    register("hallmark", lambda path=None: s.load_gmt(path or files["hallmark"][0]), files["hallmark"])
    register("reactome_wikipathways", lambda path=None: s.load_gmt(path or files["reactome_wikipathways"][0]),
             files["reactome_wikipathways"])
    register("markers", lambda path=None: s.load_gmt(*([path] if path else files["markers"])), files["markers"])
    register("cell_ontology", s.load_cell_ontology, files["cell_ontology"])


@hookimpl
def register_tools(register):
    from c2s_agent.knowledge import tools

    for tool in tools.all_tools():
        register(tool)
