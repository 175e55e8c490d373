"""TMU as a library (docs/api.md) on a model class and a TensorDataset the package has never seen: the
one-off serves two requests, predicted-easy forget samples stay right and predicted-hard ones change,
a saved and loaded one-off predicts bit for bit the same, the challenge's `unlearning()` runs, and bad
input is refused with a one-line error naming what is wrong."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

import tmu_utils as tmu
from tmu_utils.challenge import unlearning
from tmu_utils.core.streaming import DatasetImages, read_labels

CPU = torch.device("cpu")
# small knobs for a 3000-member problem (as params/smoke.yaml); 5 epochs and 8x repetition flip the hard
# samples of a small model (tests/test_tmu.py measured it on the same problem)
ONE_OFF = dict(epochs=4, twin_epochs=1, curriculum_epochs=1, bank_per_class=20, adv_steps=2, predictor_epochs=50,
               cv_folds=3, progress=False)
FLIPPING = dict(unlearn_epochs=5, hard_repeat=8, unlearn_lr=0.02, retain_fraction=0.5)


class UserNet(nn.Module):
    """Nothing like the package's models: no `features`, no `head`."""

    def __init__(self, outputs: int = 10):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 96), nn.Tanh())
        self.decision = nn.Linear(96, outputs)

    def forward(self, x):
        return self.decision(self.encoder(x))


@pytest.fixture(scope="module")
def user_data(fashion_mnist):
    """4000 training images as float [0, 1] in a TensorDataset: 3000 members, 1000 holdout."""
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(fashion_mnist.train_y), generator=g)[:4000]
    data = TensorDataset(fashion_mnist.train_x[idx].float() / 255, fashion_mnist.train_y[idx])
    return data, Subset(data, list(range(3000))), Subset(data, list(range(3000, 4000)))


@pytest.fixture(scope="module")
def user_original(user_data):
    """The user's model, trained by the user's own loop on the members."""
    _, members, _ = user_data
    torch.manual_seed(0)
    model = UserNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(8):
        for x, y in DataLoader(members, batch_size=64, shuffle=True):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def one_off(user_original, user_data):
    _, members, holdout = user_data
    return tmu.build_one_off(user_original, UserNet, members, holdout, device=CPU, **ONE_OFF)


def request(data, forget_range):
    forget = list(forget_range)
    return Subset(data, [i for i in range(3000) if i not in set(forget)]), Subset(data, forget)


def correct(model, dataset):
    x, y = DatasetImages(dataset)[:], read_labels(dataset)
    with torch.no_grad():
        return model.eval()(x).argmax(1) == y


@pytest.mark.parametrize("forget_range", [range(2700, 3000), range(0, 300)], ids=["request 1", "request 2"])
def test_one_off_serves_requests_easy_stay_right_hard_change(user_original, user_data, one_off, forget_range):
    data, _, _ = user_data
    retain, forget = request(data, forget_range)
    before_state = {k: v.clone() for k, v in user_original.state_dict().items()}
    pred = tmu.request_prediction(one_off, user_original, DatasetImages(forget)[:], read_labels(forget),
                                  DatasetImages(retain), read_labels(retain), CPU)
    assert 0 < pred.easy.float().mean() < 1
    model = tmu.unlearn(user_original, retain, forget, one_off, device=CPU, **FLIPPING)
    before, after = correct(user_original, forget), correct(model, forget)
    easy, hard = pred.easy, ~pred.easy
    assert after[easy & before].float().mean() > 0.8  # the predicted-easy samples it knew stay right
    assert after[hard & before].float().mean() < 0.4  # the predicted-hard ones it knew are flipped
    assert all(torch.equal(v, before_state[k]) for k, v in user_original.state_dict().items())  # copied, untouched


def test_a_saved_and_loaded_one_off_predicts_bit_for_bit_the_same(user_original, user_data, one_off, tmp_path):
    data, _, _ = user_data
    retain, forget = request(data, range(2700, 3000))
    one_off.save(tmp_path / "one_off.pt")
    loaded = tmu.OneOff.load(tmp_path / "one_off.pt", UserNet)
    args = (DatasetImages(forget)[:], read_labels(forget), DatasetImages(retain), read_labels(retain), CPU)
    first, again = tmu.request_prediction(one_off, user_original, *args), tmu.request_prediction(loaded, user_original, *args)
    assert torch.equal(first.proba, again.proba) and torch.equal(first.easy, again.easy)
    a = tmu.unlearn(user_original, retain, forget, one_off, device=CPU)
    b = tmu.unlearn(user_original, retain, forget, loaded, device=CPU)
    x = DatasetImages(forget)[:]
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_the_baselines_go_through_the_same_call(user_original, user_data):
    data, _, _ = user_data
    retain, forget = request(data, range(2700, 3000))
    x = DatasetImages(forget)[:]
    for method in ("finetune", "neggrad_plus"):
        model = tmu.unlearn(user_original, retain, forget, method=method, device=CPU)
        with torch.no_grad():
            assert not torch.equal(model(x), user_original(x))


def test_the_challenge_interface_unlearns_net_in_place(user_original, user_data):
    import copy

    data, _, holdout = user_data
    retain, forget = request(data, range(2700, 3000))
    net = copy.deepcopy(user_original)
    loaders = [DataLoader(d, batch_size=128) for d in (retain, forget, holdout)]
    returned = unlearning(net, *loaders, **ONE_OFF)
    assert returned is net
    x = DatasetImages(forget)[:]
    with torch.no_grad():
        assert not torch.equal(net(x), user_original(x))
    assert correct(net, holdout).float().mean() > correct(user_original, holdout).float().mean() - 0.1


def test_a_layer_that_cannot_be_reinitialised_leaves_the_curriculum_feature_out(user_original):
    class Scaled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.scale = inner, nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.inner(x) * self.scale

    from tmu_utils.challenge import _reinitialised

    assert _reinitialised(user_original) is not None
    assert _reinitialised(Scaled(user_original)) is None


def test_a_holdout_smaller_than_the_forget_set_warns_how_the_twin_rate_widens(user_original, user_data):
    data, members, _ = user_data
    retain, forget = request(data, range(2700, 3000))
    small = tmu.build_one_off(user_original, UserNet, members, Subset(data, list(range(3000, 3200))), device=CPU,
                              **dict(ONE_OFF, forget_fraction=0.05))
    twin = len(small.unseen_margins)
    with pytest.warns(tmu.TwinSizeWarning) as caught:
        tmu.unlearn(user_original, retain, forget, small, device=CPU)
    # 1/(2 sqrt n): the largest binomial standard error of a rate over n samples
    assert f"up to {0.5 / twin ** 0.5:.3f} instead of {0.5 / 300 ** 0.5:.3f}" in str(caught[0].message)


@pytest.mark.parametrize("case, message", [
    ("forget outside the members", "not a subset of the members"),
    ("forget overlaps retain", "share"),
    ("output width", "outputs but"),
    ("empty holdout", "holdout is empty"),
    ("normalised images", "not [0, 1]"),
])
def test_bad_input_gets_a_one_line_error_naming_it(user_original, user_data, one_off, case, message):
    data, members, holdout = user_data
    retain, forget = request(data, range(2700, 3000))
    with pytest.raises(tmu.LibraryError) as err:
        if case == "forget outside the members":
            tmu.unlearn(user_original, retain, Subset(data, list(range(3500, 3600))), one_off, device=CPU)
        elif case == "forget overlaps retain":
            tmu.unlearn(user_original, retain, Subset(data, list(range(0, 50))), one_off, device=CPU)
        elif case == "output width":
            tmu.unlearn(UserNet(outputs=5), retain, forget, method="finetune", device=CPU)
        elif case == "empty holdout":
            tmu.build_one_off(user_original, UserNet, members, Subset(data, []), device=CPU, **ONE_OFF)
        else:
            shifted = TensorDataset(data.tensors[0] * 2 - 1, data.tensors[1])
            tmu.unlearn(user_original, Subset(shifted, list(range(2700))), Subset(shifted, list(range(2700, 3000))),
                        method="finetune", device=CPU)
    assert message in str(err.value) and "\n" not in str(err.value)
