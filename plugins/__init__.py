"""xaibench's built-in explanation methods, installed as ``xaibench_plugins``.

Each module registers its method with :func:`xaibench.register_explainer` and is declared in the
``xaibench.explainers`` entry-point group, as a third-party plugin would be.
"""
