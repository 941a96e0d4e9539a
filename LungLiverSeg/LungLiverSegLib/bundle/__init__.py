"""Model bundles (model.json + safetensors weights + card) and the catalogue of installed models.

``spec``, ``json_fields``, ``model_json``, ``card``, ``safetensors_header``, ``sources``,
``catalogue`` and ``importing`` import no torch, so listing and validating models is cheap and
works in a Slicer without torch (an import loads the network, importing torch when it runs).
``networks`` and ``unets`` (torch; MONAI's U-Nets without importing MONAI) and ``weights`` (torch,
safetensors) build and load networks. May import: the foundations only.
"""
