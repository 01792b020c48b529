"""Dataset cards (``cards/*.yaml``) and the code that turns a card's source file into
checksummed, cached user sequences and RecBole atomic files."""
from datasets.prepare import (  # noqa: F401
    DataError,
    Sequences,
    card_names,
    load_card,
    load_sequences,
    resolve_data_dir,
)
