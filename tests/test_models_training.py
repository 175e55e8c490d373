"""Model shapes and features; training lowers the loss on real data; CPU determinism."""
import pytest
import torch

from tmu_utils.core.models import build_model
from tmu_utils.core.training import TrainConfig, augment_batch, predict, seed_everything, train_model

CPU = torch.device("cpu")


@pytest.mark.parametrize("arch, channels, size", [("small_cnn", 1, 28), ("small_cnn", 3, 32), ("mlp", 1, 28),
                                                  ("resnet18", 3, 32)])
def test_shapes_features_and_head(arch, channels, size):
    model = build_model(arch, 7, channels, size).eval()
    x = torch.rand(2, channels, size, size)
    feats = model.features(x)
    assert feats.dim() == 2 and feats.shape[0] == 2
    assert model.head.in_features == feats.shape[1] and model.head.out_features == 7
    assert torch.allclose(model(x), model.head(feats))


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("vgg", 10, 1, 28)


def _train(fashion_mnist, seed, epochs=2):
    seed_everything(seed)
    model = build_model("small_cnn", 10, 1, 28)
    x, y = fashion_mnist.train_x[:2000], fashion_mnist.train_y[:2000]
    result = train_model(model, x, y, TrainConfig(epochs=epochs, batch_size=128), device=CPU, seed=seed,
                         progress=False)
    return model, result


def test_training_lowers_the_loss_on_real_data(fashion_mnist):
    model, result = _train(fashion_mnist, 0, epochs=3)
    assert result.losses[-1] < 0.7 * result.losses[0]
    acc = (predict(model, fashion_mnist.test_x[:1000], CPU).argmax(1) == fashion_mnist.test_y[:1000]).float().mean()
    assert acc > 0.6  # ten classes: chance is 0.1


def test_cpu_training_is_bit_identical_under_a_seed(fashion_mnist):
    a, _ = _train(fashion_mnist, 1, epochs=1)
    b, _ = _train(fashion_mnist, 1, epochs=1)
    c, _ = _train(fashion_mnist, 2, epochs=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_augment_is_a_per_sample_crop_and_flip_of_the_padded_image():
    x = torch.rand(8, 3, 32, 32)
    out = augment_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    for i in range(len(x)):
        crops = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)
