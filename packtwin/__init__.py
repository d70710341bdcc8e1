"""packtwin: a physics-informed digital twin of lithium-ion battery packs.

Importing packtwin pulls in neither PyBaMM nor Panel: simulation lives in ``packtwin.sim`` and the
app in ``packtwin.app``, each imported only when used.
"""

__version__ = "0.1.0"
