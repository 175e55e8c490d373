"""Measuring an unlearned model against retraining: the single-model alignment metrics, the
membership-inference attack, the population metrics (KLoM, U-LiRA, the unlearning challenge's
forgetting score) and scoring against M_g and M_g'. Built on core only; it never calls the method."""
