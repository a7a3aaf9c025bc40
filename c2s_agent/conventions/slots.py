"""The names c2s-agent reads and writes: the slots its functions fill and the names of its concepts.

Every module takes these names from here; nothing else spells them out.
"""

from __future__ import annotations

#: The concept of a cell's type: a column role, the C2S prompt task, a knowledge record kind and an argument name.
CELL_TYPE = "cell_type"
#: The concept of an experimental condition (control, stimulated ...): a column role and a prompt field.
CONDITION = "condition"
SAMPLE = "sample"
CLUSTER = "cluster"

#: ``obs`` columns written by annotation.
PREDICTED_TYPE = "c2s_cell_type"
PREDICTED_CONFIDENCE = "c2s_confidence"
#: Free-text annotation: the Cell Ontology id the model's words name ("" when none), and the words themselves.
PREDICTED_ONTOLOGY_ID = "c2s_cell_ontology_id"
PREDICTED_TEXT = "c2s_generated_text"
#: ``obsm`` keys.
LABEL_PROBS = "c2s_label_probs"
EMBEDDING = "X_c2s"
EMBEDDING_UMAP = "X_c2s_umap"
#: ``obs`` column of similarity to a reference group.
SIMILARITY = "c2s_similarity"
#: ``obs`` columns of generated or perturbed cells.
SENTENCE = "c2s_sentence"
GENERATED_TYPE = PREDICTED_TYPE
GENERATED_CONDITION = "c2s_condition"
PERTURBATION = "c2s_perturbation"
SOURCE_CELL = "c2s_source_cell"

#: ``uns`` keys of results.
MARKERS = "c2s_markers"
ANNOTATION = "c2s_annotate"
PERTURBATION_RESULT = "c2s_perturbation"
PROGRAM_SCORES = "c2s_program_scores"
SCREEN = "c2s_screen"
MULTICELL = "c2s_multicell"
REVERSE_FIT = "c2s_reverse_fit"
GENERATION_METRICS = "c2s_generation_metrics"
LIGAND_RECEPTOR = "c2s_lr"
INPUT = "c2s_input"
