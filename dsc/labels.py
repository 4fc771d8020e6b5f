"""Label conventions shared by every dataset in dsc (PASCAL VOC's)."""

BACKGROUND = 0  # instance and class id of background pixels
VOID = 255  # ignored pixels: object borders, crowds, unlabelled regions
