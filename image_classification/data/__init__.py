"""Data backends. Every backend yields (images, targets) on the training device: images float, normalised with the
model's mean/std, NCHW or channels_last; targets int64 class indices."""
