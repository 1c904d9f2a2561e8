"""The sky: HEALPix layout, regions, overlap."""
