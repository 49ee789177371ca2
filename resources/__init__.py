"""Data files that SMP Inspector ships (installed as the package ``smp_model.resources``;
read them with ``importlib.resources.files("smp_model.resources")``)."""
