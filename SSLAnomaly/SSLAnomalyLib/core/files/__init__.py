"""Writing files safely: the one error shape, atomic writes, all-or-nothing sets of files, folder locks."""
