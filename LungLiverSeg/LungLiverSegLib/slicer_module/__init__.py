"""The Slicer side: the Qt-free logic behind the module's widget, the MRML bridge, the scene and
the child-process runner.

The only subpackage that may import slicer, vtk or qt. Everything that needs torch, MONAI or
safetensors is imported inside functions, so that the module loads in a Slicer where they are
still missing and can offer to install them.
"""
