"""Build of poai's C extension (ext/) and packaging of models.lock.

Compiler flags are set here, once: -O3 and the portable x86-64 / aarch64
baseline (never -march=native or -ffast-math in a distributed build; the
kernels are integer-only anyway).  The registry file models.lock lives at
the repository root and is copied into the package at build time.
"""

import shutil
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildPyWithLock(build_py):
    """Copy models.lock into poai/models/ of the build tree."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "poai" / "models" / "models.lock"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "models.lock", target)


extensions = [
    Extension(
        "poai._native",
        sources=["ext/_native.pyx", "ext/poai_kernels.c", "ext/poai_packed.c", "ext/poai_forward.c",
                 "ext/poai_ops_avx2.c", "ext/poai_avx2.c", "ext/poai_avx512.c", "ext/poai_amx.c",
                 "ext/poai_neon.c",
                 "ext/poai_probe.c"],
        include_dirs=["ext", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # SIMD variants enable their instruction sets per function (target
        # attributes) and are chosen at run time; OpenMP splits matmul rows.
        extra_compile_args=["-O3", "-std=gnu11", "-fno-strict-aliasing", "-Wall", "-fopenmp"],
        extra_link_args=["-fopenmp"],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
    cmdclass={"build_py": BuildPyWithLock},
)
