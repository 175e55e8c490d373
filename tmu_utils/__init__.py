"""Twin Machine Unlearning (TMU): unlearn so that the model matches the gold model.

The library (docs/api.md): `build_one_off` once per trained model and `unlearn` for each deletion
request, TMU or a baseline; `tmu_utils.challenge.unlearning` is the NeurIPS 2023 unlearning challenge's
entry point. The command line (`python -m tmu_utils`) runs the experiments; the sub-packages hold the
layers. The names below load on first use, so that importing one module of the package stays light.
"""
import importlib

__version__ = "0.1.0"
_PUBLIC = {"build_one_off": "library", "unlearn": "library", "request_prediction": "library",
           "LibraryError": "library", "TwinSizeWarning": "library", "LIBRARY_METHODS": "library", "OneOff": "method.amortised",
           "load_dataset": "core.data", "Params": "core.params", "ParamsError": "core.params"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'tmu_utils' has no attribute {name!r}")
