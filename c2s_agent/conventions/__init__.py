"""How datasets name things, and the names c2s-agent gives its results: one place for every convention.

- :mod:`.slots`: the ``obs``/``obsm``/``uns`` keys c2s writes and the names of its concepts;
- :mod:`.columns`: a dataset's cell-type, condition, sample and cluster columns, and its control value;
- :mod:`.labels`: a user's words matched to label values by meaning and morphology;
- :mod:`.ontology`: cell-type names as Cell Ontology terms;
- :mod:`.species`: the organism, from gene names.
"""

from .columns import Columns, categorical_columns, control_value, find_columns
from .labels import LabelMention, find_label_mentions, match_labels
from .ontology import Term, is_a, lookup
from .slots import CELL_TYPE, CLUSTER, CONDITION, PREDICTED_CONFIDENCE, PREDICTED_TYPE, SAMPLE
from .species import HUMAN, MOUSE, Species, detect_species

__all__ = [
    "CELL_TYPE",
    "CLUSTER",
    "CONDITION",
    "HUMAN",
    "MOUSE",
    "PREDICTED_CONFIDENCE",
    "PREDICTED_TYPE",
    "SAMPLE",
    "Columns",
    "LabelMention",
    "Species",
    "Term",
    "categorical_columns",
    "control_value",
    "detect_species",
    "find_columns",
    "find_label_mentions",
    "is_a",
    "lookup",
    "match_labels",
]
