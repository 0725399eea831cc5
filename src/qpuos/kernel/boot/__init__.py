"""The controller's OS image: a trimmed Python as PID 1, booted under QEMU.

``image.build_image`` writes a reproducible newc initramfs (``initramfs``) holding the
interpreter, its libraries, the stdlib modules the controller imports and qpuos;
``init`` is its PID 1; ``qemu.boot`` starts it with the ``edu`` PCI device and reads
the staged boot report from the serial console.

This package's ``__init__`` imports nothing: PID 1 imports its modules one by one, and
the image must not pull in numpy (see ``image``).
"""
