"""Generation jobs: student probe → teacher critique → teacher refine → verification."""
