"""TMU's method, gold-free: the twin problem (M_t, D_tf), the curriculum model, the DF/AF/CF features,
the generalization-label predictor and the one-off that builds them once per original model. Built
on core only; unlearning/ holds the step that uses its easy/hard split."""
