"""Data: image decoding (all of it lives in ``images``), dataset specs and listings (``datasets``), the synthetic demo
data (``demo_data``) and importing own folders and zips (``importing``).

Layer 3 of core: imports ``core.store`` and the ground floor only.
"""
