"""resnet9, the CPU-scale CIFAR-10 model (tmu_utils/core/models.py, params/cifar10.yaml): its shapes,
its size, and the block TMU's default step (`tmu_update: last_block`) trains in it."""
import torch

from tmu_utils.core.models import Residual, build_model, resnet9
from tmu_utils.unlearning.tmu_step import frozen_split, step_parameters


def test_resnet9_maps_images_to_logits_and_features():
    model = build_model("resnet9", 10, 3, 32).eval()
    x = torch.rand(4, 3, 32, 32)
    assert model(x).shape == (4, 10) and model.features(x).shape == (4, 128)  # 8 x the width, 16
    assert resnet9(10, 3, 32, width=12).features(x).shape == (4, 96)
    assert build_model("resnet9", 100, 3, 64).eval()(torch.rand(2, 3, 64, 64)).shape == (2, 100)


def test_last_block_is_the_last_residual_block_and_the_head():
    model = build_model("resnet9", 10, 3, 32)
    last = [m for m in model.body if isinstance(m, Residual)][-1]
    trained = {id(p) for p in step_parameters(model, "last_block")}
    assert trained == {id(p) for p in [*last.parameters(), *model.head.parameters()]}
    prefix, rest = frozen_split(model, "last_block")  # the step's cached prefix ends right before that block
    x = torch.rand(2, 3, 32, 32)
    model.eval(), prefix.eval(), rest.eval()
    assert torch.allclose(rest(prefix(x)), model(x), atol=1e-5)

