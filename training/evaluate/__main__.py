from training.evaluate.cli import main

main()
