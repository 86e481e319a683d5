"""One interface per input kind (images, text): everything the recipe needs that depends on the modality."""
