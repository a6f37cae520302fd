"""Dataset adapters: one registered factory per layout turns a dataset root into ``SourceItem``s.

``iter_items(name, root, **options)`` reads a dataset with the adapter registered as ``name``;
``list_datasets()`` names them; ``guess_dataset(source)`` picks one for a SOURCE given without a name.
New layouts register with ``@register_dataset("name")`` on a ``factory(root, **options)`` function.
"""

# Imported for their @register_dataset side effects (the built-in adapters).
from rfm_data.adapters import dicom_folder, layouts, nih, rsna, siim, tables  # noqa: F401
from rfm_data.adapters.base import AdapterFn, datasets, iter_items, list_datasets, register_dataset
from rfm_data.adapters.guess import guess_dataset

__all__ = ["AdapterFn", "datasets", "guess_dataset", "iter_items", "list_datasets", "register_dataset"]
