"""Lightning data modules: digits (embedded default), CIFAR-10 and image folders."""
