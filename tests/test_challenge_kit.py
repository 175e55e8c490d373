"""The NeurIPS 2023 unlearning starting kit's own data pipeline through `tmu_utils.challenge.unlearning`
(docs/challenge.md): the kit's transforms over image files, `Subset`s by index, `random_split` with a seeded
generator, shuffled loaders of 128 and torchvision's resnet18; dict batches through the loader's own
collate_fn; a validation set smaller than the forget set; and every bad input refused in one line before
any model trains."""
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, random_split
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.models import resnet18

import tmu_utils.challenge as challenge
from tmu_utils import LibraryError, TwinSizeWarning
from tmu_utils.core.input_range import InputRange
from tmu_utils.method import features

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
KIT_TRANSFORM = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
# one epoch of everything that trains, and a DF bank the few images per class can fill
ONE_EPOCH = dict(epochs=2, twin_epochs=1, curriculum_epochs=1, unlearn_epochs=1, knn_k=2, adv_steps=1,
                 predictor_epochs=20, cv_folds=2, progress=False)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """CIFAR-like PNG files in ImageFolder's layout: 8 training and 4 test images of each of 10 classes."""
    root, rng = tmp_path_factory.mktemp("kit"), np.random.default_rng(0)
    for split, per_class in (("train", 8), ("test", 4)):
        for c in range(10):
            (root / split / str(c)).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / str(c) / f"{i}.png")
    return root


def kit_loaders(root, n_forget: int, transform=KIT_TRANSFORM, val_transform=KIT_TRANSFORM, batch_size: int = 128):
    """The kit's loaders: forget and retain `Subset`s of the training set by index, validation half the test
    set by `random_split` with a seeded generator, shuffled."""
    train_set = ImageFolder(root / "train", transform=transform)
    held_out = ImageFolder(root / "test", transform=val_transform)
    forget_idx = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(42))[:n_forget].tolist()
    retain_idx = [i for i in range(len(train_set)) if i not in set(forget_idx)]
    _, val_set = random_split(held_out, [0.5, 0.5], generator=torch.Generator().manual_seed(42))
    return [DataLoader(s, batch_size=batch_size, shuffle=True) for s in
            (Subset(train_set, retain_idx), Subset(train_set, forget_idx), val_set)]


def kit_net(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return resnet18(num_classes=num_classes)


@pytest.fixture
def one_thread():
    """Torch on one thread where resnet18 trains: at two, on this 2-core machine shared with other jobs
    (load average 7), OpenMP's threads wait on each other and the kit's pipeline took 57 s, not 5 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_kits_own_pipeline_runs_end_to_end(image_files, monkeypatch, one_thread):
    seen = []  # the input range every adversarial feature ran in
    real_af = features.adversarial_feature
    monkeypatch.setattr(features, "adversarial_feature",
                        lambda *a, **k: seen.append(k["input_range"]) or real_af(*a, **k))
    net = kit_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    start = time.perf_counter()
    returned = challenge.unlearning(net, *kit_loaders(image_files, 10), **ONE_EPOCH)
    assert time.perf_counter() - start < 30
    assert returned is net
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    # the default step trains layer4[1] and fc only; BatchNorm statistics and every other weight stay
    assert changed and all(k.startswith(("layer4.1.", "fc.")) for k in changed)
    assert any(k.startswith("layer4.1.conv") for k in changed)
    # AF ran on the twin and on the forget set, in the range the kit's Normalize puts pixels in (read off
    # the data, whose generated pixels reach 0 and 255 in every channel), not in [0, 1]
    kit = InputRange.from_normalization(MEAN, STD, 3)
    assert len(seen) == 2
    assert all(torch.allclose(w.low, kit.low, atol=1e-5) and torch.allclose(w.high, kit.high, atol=1e-5) for w in seen)


class DictImages(Dataset):
    """The challenge's Kaggle round: samples as dicts, the label under `age_group`, PIL images left to the
    loader's collate_fn to turn into tensors."""

    def __init__(self, folder: ImageFolder):
        self.folder = folder

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, i):
        image, label = self.folder[i]
        return {"image": image, "age_group": label, "age": 20.0 + label, "person_id": f"p{i}"}


def test_dict_batches_are_read_through_the_loaders_own_collate_fn(image_files, one_thread):
    calls = []

    def collate(samples):  # the only place the PIL images become tensors: bypassing it cannot work
        calls.append(len(samples))
        return {"image": torch.stack([KIT_TRANSFORM(s["image"]) for s in samples]),
                "age_group": torch.tensor([s["age_group"] for s in samples]),
                "age": torch.tensor([s["age"] for s in samples]), "person_id": [s["person_id"] for s in samples]}

    train_set, test_set = (DictImages(ImageFolder(image_files / s)) for s in ("train", "test"))
    _, val_set = random_split(test_set, [0.5, 0.5], generator=torch.Generator().manual_seed(42))
    forget = list(range(0, 80, 8))  # one image of each class
    sets = (Subset(train_set, [i for i in range(80) if i not in forget]), Subset(train_set, forget), val_set)
    loaders = [DataLoader(s, batch_size=16, shuffle=True, collate_fn=collate) for s in sets]
    net = kit_net()
    before = net.fc.weight.clone()
    challenge.unlearning(net, *loaders, **ONE_EPOCH)
    assert not torch.equal(net.fc.weight, before)
    assert sum(calls) == 70 + 10 + 20  # every sample once, through collate: read once, in memory after


def test_a_validation_set_smaller_than_the_forget_set_gives_all_it_has_and_warns(image_files, one_thread):
    loaders = kit_loaders(image_files, 30)  # a forget set of 30, a validation set of 20
    with pytest.warns(TwinSizeWarning) as caught:
        challenge.unlearning(kit_net(), *loaders, **ONE_EPOCH)
    message = str(caught[0].message)
    # 1/(2 sqrt n): the largest binomial standard error of a rate over n samples, at 20 and at 30
    assert "twin forget set of 20" in message and "up to 0.112 instead of 0.091" in message


def loaders_for(case: str, root) -> tuple[list[DataLoader], nn.Module, dict]:
    """The kit's loaders and net with one thing wrong, and the call's extra arguments."""
    kwargs = {}
    loaders, net = kit_loaders(root, 10), kit_net()
    if case == "normalization that is not the loaders'":
        kwargs["normalization"] = ((0.5,) * 3, (0.5,) * 3)
    elif case == "validation not normalised":
        loaders = kit_loaders(root, 10, val_transform=transforms.ToTensor())
    elif case == "images without labels":
        loaders[1] = DataLoader([torch.zeros(3, 32, 32)] * 4, batch_size=2)
    elif case == "dict batches without known keys":
        loaders[1] = DataLoader([{"pic": torch.zeros(3, 32, 32), "cls": 1}] * 4, batch_size=2)
    elif case == "one-hot labels":
        loaders[1] = DataLoader([(torch.zeros(3, 32, 32), torch.eye(10)[1])] * 4, batch_size=2)
    elif case == "too few outputs":
        net = kit_net(num_classes=5)
    elif case == "empty forget set":
        loaders[1] = DataLoader(Subset(loaders[1].dataset.dataset, []), batch_size=128)
    elif case == "images of another size":
        loaders = kit_loaders(root, 10, val_transform=transforms.Compose([transforms.Resize(28), KIT_TRANSFORM]))
    elif case == "forget overlaps retain":
        loaders[1] = DataLoader(Subset(loaders[0].dataset.dataset, loaders[0].dataset.indices[:5]), batch_size=128)
    elif case == "NaN images":
        loaders[1] = DataLoader([(torch.full((3, 32, 32), float("nan")), 1)] * 4, batch_size=2)
    elif case == "a DF bank short of a class":
        kwargs["knn_k"] = 50
    elif case == "a block the model lacks":
        kwargs["last_block"] = "layer9"
    elif case == "an unknown knob":
        kwargs["unlearn_lrr"] = 0.1
    return loaders, net, kwargs


@pytest.mark.parametrize("case, says", [
    ("normalization that is not the loaders'", "outside"),
    ("validation not normalised", "must normalise alike"),
    ("images without labels", "Tensors"),
    ("dict batches without known keys", "give keys="),
    ("one-hot labels", "one-hot"),
    ("too few outputs", "5 outputs but"),
    ("empty forget set", "forget set is empty"),
    ("images of another size", "differ in shape"),
    ("forget overlaps retain", "share 5 samples"),
    ("NaN images", "NaN"),
    ("a DF bank short of a class", "knn_k=50"),
    ("a block the model lacks", "no module 'layer9'"),
    ("an unknown knob", "unlearn_lrr"),
])
def test_each_bad_input_gets_one_line_before_any_training(image_files, monkeypatch, case, says):
    def trains(*args, **kwargs):
        raise AssertionError("a model started training before the input was refused")

    monkeypatch.setattr(challenge, "build_one_off", trains)
    monkeypatch.setattr(challenge, "unlearn", trains)
    # No wall-clock bound: on this shared 2-core machine one resnet18 forward pass of two images took
    # from 0.03 s to 1 s at OMP_NUM_THREADS=2; a refusal measured 0.13 s at one thread (docs/api.md).
    loaders, net, kwargs = loaders_for(case, image_files)
    with pytest.raises(LibraryError) as err:
        challenge.unlearning(net, *loaders, **{**ONE_EPOCH, **kwargs})
    assert says in str(err.value) and "\n" not in str(err.value)
