"""The mlops-components KFP components as an installable package: ``pip install`` the repository, then

    from mlops_components import components
    steps = components.load_all()                      # every step, as committed (release registry, tags)
    steps = components.load_all(pinned_dir="specs/")   # the specs build.py --pin-dir wrote, or a release's
    steps["train"](train_uri=..., output_dir=...)      # inside a @dsl.pipeline
"""
