"""streamfit's core. Importing it applies the interpreter workarounds in `streamfit.compat`."""

from streamfit import compat as _compat  # noqa: F401 - imported for its effect
