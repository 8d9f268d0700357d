terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # validated with 5.100.0 (tests/infra/test_terraform.py)
      version = ">= 5.100, < 6.0"
    }
  }
}
