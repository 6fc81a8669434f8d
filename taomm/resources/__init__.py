"""Package data: taxonomies and other small reference files shipped with taomm."""
