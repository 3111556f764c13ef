"""Training formats of the labels: the CIHP release layout and COCO (writers and the CIHP reader)."""
