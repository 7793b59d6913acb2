"""Process plumbing beneath every wing of the core: training, inference and quantization all run under the same
process groups, so their reductions live here rather than in one of them."""
