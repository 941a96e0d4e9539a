"""Re-measure a trained bundle's validation metrics with the current core and rewrite its card:
``LungLiverSegTraining.revalidate`` (its docstring says why and how).

    python Training/scripts/revalidate.py runs/lungs-ct-3d/bundle/lungs-ct-3d-v0.1.0 \
        runs/lctsc-dataset runs/lungs-ct-3d
"""

from LungLiverSegTraining.revalidate import main

if __name__ == "__main__":
    main()
