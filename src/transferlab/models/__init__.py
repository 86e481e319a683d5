"""Networks: the base registry, image and text classifiers, heads, word vectors and saved-model loading."""
