"""taomm: Chinese e-commerce multimodal learning with InterBERT.

From product listings (photo + seller title) to a searchable item index. The library
lives in ``taomm`` (text, model, training, retrieval), ``taomm.detectors`` (product
detector and region features) and ``taomm.datasets`` (feature store, dataset adapters,
demo catalog); ``taomm.cli`` is the command line.
"""

__version__ = "0.1.0"
