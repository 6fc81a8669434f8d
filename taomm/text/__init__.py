"""Text processing for product titles: normalisation, spam filter, segmentation, tokenizer, mining."""

MAX_TITLE_CHARS = 36  # the paper's title length after cleaning (appendix A.1)
