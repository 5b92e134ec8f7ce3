"""How heatmaps are drawn over images by default, defined once for the figures and the command line
(which reads them without loading matplotlib)."""

#: The colour map and opacity of heatmaps drawn over images (the CAM paper's figures use jet).
DEFAULT_CMAP = "jet"
DEFAULT_ALPHA = 0.5
